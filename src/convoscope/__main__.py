import sys


def entry() -> None:
    """The `convoscope` command. Ctrl-C while the libraries still load (the first half second) exits as
    quietly as Ctrl-C later does, without a traceback from deep inside an import."""
    try:
        from convoscope.cli import main
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    main()


if __name__ == "__main__":
    entry()
