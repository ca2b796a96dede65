from gicap.cli import main

raise SystemExit(main())
