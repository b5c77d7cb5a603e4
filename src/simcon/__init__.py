"""simcon: representational similarity of vision models and its consistency across datasets."""
