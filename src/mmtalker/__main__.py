import sys

from mmtalker.cli import main

sys.exit(main())
