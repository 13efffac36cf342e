"""`make run`: a whole local network on this machine, with its own Redis, and a live view of it."""
