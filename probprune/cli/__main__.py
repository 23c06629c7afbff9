"""``python -m probprune.cli ...`` = ``probprune ...``."""
from probprune.cli import main

if __name__ == "__main__":
    main()
