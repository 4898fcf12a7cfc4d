"""Task output: the pipes taskforce reads, where their lines go, and the recent lines kept."""
