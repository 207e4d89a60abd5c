namespace ferry::checkpoint {
// Filled in by its issue.
}  // namespace ferry::checkpoint
