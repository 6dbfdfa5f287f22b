import sys

from huskyai.cli.main import main

sys.exit(main())
