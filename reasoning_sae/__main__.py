import sys

from reasoning_sae.cli import main

if __name__ == "__main__":  # import-safe: vLLM spawns its workers, which import the main module again
    sys.exit(main())
