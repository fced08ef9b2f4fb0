import sys

from optout.client.cli import main

sys.exit(main())
