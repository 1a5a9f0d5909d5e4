import sys

from reasoning_sae.cli import main

sys.exit(main())
