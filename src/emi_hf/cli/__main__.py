"""`python -m emi_hf.cli ...` = `emi-hf ...`."""

from . import main

raise SystemExit(main())
