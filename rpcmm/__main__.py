import sys

from rpcmm.cli import main

sys.exit(main())
