import sys


def main(argv=None) -> int:
    print("reev-api: not built yet", file=sys.stderr)
    return 2
