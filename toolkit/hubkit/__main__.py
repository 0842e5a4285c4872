"""`python -m hubkit` runs the CLI."""

from .cli import main

main()
