"""``python -m commandbus``: the operator CLI, as the ``commandbus`` command."""

from commandbus.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
