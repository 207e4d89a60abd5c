namespace ferry::lab {
// Filled in by its issue.
}  // namespace ferry::lab
