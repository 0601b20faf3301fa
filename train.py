"""Train an emi-hf model on cached features (see `python train.py --help`).

    accelerate launch train.py --features features/ --modality visual --output-dir runs/visual
    accelerate launch --cpu --num_processes 1 train.py --features features/ --modality audio --output-dir runs/audio
    torchrun --nproc_per_node 2 train.py --cpu --features features/ --modality visual --batch-size 32
    accelerate launch train.py --features features/ --modality fusion --output-dir runs/fusion \
        --visual-model runs/visual --audio-model runs/audio

The loop itself is `emi_hf.training.loop.train` (also `emi-hf train ...`).
"""

import sys

from emi_hf.training import main

if __name__ == "__main__":
    sys.exit(main())
