from conduit.cli import main

raise SystemExit(main())
