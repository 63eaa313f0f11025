import sys

from codeclab.fast_exit import skip_final_collections
from codeclab.worker.entrypoint import main

skip_final_collections()
sys.exit(main())
