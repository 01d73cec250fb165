"""Command-line tools of the package: zoo-predict."""
