"""`python -m fastfeed` runs the command line."""

try:
    from fastfeed.cli import main
except KeyboardInterrupt:  # Ctrl-C while still importing: exit as main() would, no traceback
    raise SystemExit(130) from None

raise SystemExit(main())
