"""``python -m mesh``: the same as the ``mesh`` command."""

from mesh.cli import main

if __name__ == "__main__":
    main()
