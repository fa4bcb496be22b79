"""``python -m chatruntime``: the same REPL as the ``chatruntime`` command."""

from chatruntime.cli import main

raise SystemExit(main())
