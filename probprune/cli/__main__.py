"""``python -m probprune.cli ...`` = ``probprune ...``."""
from . import main

if __name__ == "__main__":
    main()
