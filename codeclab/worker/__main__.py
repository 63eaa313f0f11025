import sys

from codeclab.worker.entrypoint import main

sys.exit(main())
