"""`python -m oneclickdz` is the `oneclickdz` command."""

from oneclickdz.cli import main

main()
