from tlcli.cli import main

raise SystemExit(main())
