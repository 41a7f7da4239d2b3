"""The recipes a run starts from (--recipe): the paper's, the fine-tune's and today's, each a table of the settings
it changes from TrainConfig's defaults (the paper's CIFAR recipe), with where each value comes from."""

from __future__ import annotations

from typing import Any

# torchvision's V2 recipe (the ResNet-50 IMAGENET1K_V2 weights, 80.858% top-1; its references' README): lr 0.5
# at batch 1024 for 600 epochs, cosine after a 5-epoch linear warm-up, label smoothing 0.1, mixup 0.2, cutmix
# 1.0, TrivialAugment, random erasing 0.1, wd 2e-5 (0 on normalization layers), an EMA every 32 steps, training
# crops of 176 px (RandomResizedCrop). In iterations: 600 epochs of ImageNet's 1,281,167 images at 1024 are
# 750,684; 5 epochs 6,256. Its EMA decay 0.99998 is adjusted by torchvision to 1 - 2e-5 x 1024 x 32 / 600 =
# 0.99891 per update. Not here: its repeated-augmentation sampler (--ra-sampler), and evaluation at 224 after a
# 232 resize (resnetlab evaluates at the training size's 256/224 resize).
V2_UPDATE_DECAY = 1 - 2e-5 * 1024 * 32 / 600
MODERN = {"schedule": "cosine", "milestones": [], "label_smoothing": 0.1, "mixup_alpha": 0.2, "cutmix_alpha": 1.0,
          "auto_augment": "trivialaugmentwide", "random_erase": 0.1, "norm_weight_decay": 0.0, "model_ema": True,
          "model_ema_steps": 32, "warmup": "off"}

RECIPES: dict[str, dict[str, Any]] = {
    # Sec. 4.2: batch 128, lr 0.1 /10 at 32k and 48k, 64k iterations, wd 1e-4, momentum 0.9.
    "cifar-paper": {},
    # Starting from trained weights (--weights): 30 epochs of the user's images (torchvision's transfer-learning
    # tutorial trains 25, timm's fine-tunes 10-50: a fixed iteration count would be ~950 epochs of a 540-image
    # folder, or 11 of CIFAR), kept within 100-4,000 iterations (learning_rate.FINETUNE_ITERS: enough steps for a new
    # classifier to settle on a tiny folder; no more than converges from trained weights on CIFAR-size data),
    # lr 0.01 (a tenth of training from scratch: a large lr undoes what the backbone learned) /10 at 50% and 75%,
    # a new classifier at 0.1 (--head-lr: it starts from nothing), no warm-up, the weights' own normalization;
    # batch 128, wd 1e-4, momentum 0.9.
    "finetune": {"iters": 4000, "epochs": 30.0, "lr": 0.01, "head_lr": 0.1, "milestones": [2000, 3000],
                 "warmup": "off", "eval_every": 200, "normalization": "weights"},
    # V2 on CIFAR: the paper's 64k iterations of batch 128 at lr 0.1 (V2's 0.5 scaled to batch 128 would be
    # 0.0625; the CIFAR nets train at 0.1 in the paper and public reproductions), V2's warm-up as the same share
    # of the run (5/600 of 64k: 533), V2's EMA horizon as the same share (1/(1 - 0.99891) = 917 updates of 32
    # steps: 3.9% of 750,684 iterations; here 2,500 iterations = 78 updates: decay 1 - 1/78), the paper's weight
    # decay 1e-4 (V2's 2e-5 was tuned for 600 epochs of a 25M-parameter net; the CIFAR nets have 0.27-1.7M), and
    # the paper's pad-and-crop (a RandomResizedCrop of 8% of a 32-px image is 9 px) and per-pixel mean.
    "cifar-modern": {**MODERN, "lr_warmup_iters": 533, "model_ema_decay": round(1 - 1 / 78, 5)},
    "imagenet-modern": {**MODERN, "batch_size": 1024, "lr": 0.5, "iters": 750684, "lr_warmup_iters": 6256,
                        "weight_decay": 2e-5, "model_ema_decay": round(V2_UPDATE_DECAY, 5), "img_size": 176,
                        "crop_scale": 0.08, "normalization": "imagenet", "holdout": 0, "eval_every": 5000,
                        "style": "torchvision"},
    # Sec. 3.4: batch 256, lr 0.1 /10 when the error plateaus, up to 600k iterations.
    "imagenet-paper": {
        "batch_size": 256, "iters": 600000, "schedule": "plateau", "milestones": [],
        "eval_every": 5000, "normalization": "imagenet", "holdout": 0, "warmup": "off",
    },
}
