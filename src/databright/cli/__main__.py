"""`python -m databright.cli`."""

from databright.cli.main import main

main()
