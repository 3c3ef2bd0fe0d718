import sys

from personalization_assets.cli.commands import main

sys.exit(main())
