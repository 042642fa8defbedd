from privtune.cli import main

raise SystemExit(main())
