import sys

from murphyjax.cli import main

sys.exit(main())
