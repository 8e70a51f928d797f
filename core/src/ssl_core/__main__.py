"""``python -m ssl_core`` is the ``ssl`` command."""

from ._cli import main

raise SystemExit(main())
