from soar.cli import main

raise SystemExit(main())
