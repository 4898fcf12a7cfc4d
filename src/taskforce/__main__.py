import sys

from taskforce.cli.main import main

sys.exit(main())
