namespace ferry::bench {
// Filled in by its issue.
}  // namespace ferry::bench
