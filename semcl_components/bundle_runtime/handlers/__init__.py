"""Ignite handlers the bundle workflows need and MONAI lacks, one per module.

- :class:`AtomicCheckpointSaver` (:mod:`.checkpoint_saver`): checkpoints written atomically, old ones removed after;
- :class:`WeightsLoader` (:mod:`.checkpoint_loader`): MONAI's ``CheckpointLoader``, naming a file that does not fit;
- :class:`CheckpointResumer` (:mod:`.checkpoint_resumer`): continue an interrupted run from its last checkpoint;
- :class:`RunSummaryWriter` (:mod:`.run_summary`): the run's key numbers in a JSON file, updated every epoch;
- :class:`EncoderWarmup` (:mod:`.encoder_warmup`): a pretrained encoder's learning rate held at 0, then ramped up;
- :class:`EmbeddingQualityHandler` (:mod:`.embedding_quality`): organ separation of the encoder's features;
- :class:`ConfusionMatrixWriter` (:mod:`.confusion_matrix`): the voxel confusion matrix of an evaluation (CSV, PNG);
- :class:`FinalValidationHandler` (:mod:`.final_validation`): MONAI's ``ValidationHandler``, also after the last epoch;
- :func:`handlers_for_rank` (:mod:`.rank_filter`): the handlers a process of a distributed run attaches;
- :class:`StopOnNonFiniteLoss` (:mod:`.non_finite_loss`): a NaN or infinite loss stops training, naming the files.
"""

from .checkpoint_loader import WeightsLoader
from .checkpoint_resumer import CheckpointResumer, epoch_checkpoints
from .checkpoint_saver import AtomicCheckpointSaver
from .confusion_matrix import ConfusionMatrixWriter
from .embedding_quality import EmbeddingQualityHandler
from .encoder_warmup import EncoderWarmup
from .final_validation import FinalValidationHandler
from .non_finite_loss import NonFiniteLossError, StopOnNonFiniteLoss
from .rank_filter import RANK_ZERO_ONLY, handlers_for_rank
from .run_summary import RunSummaryWriter

__all__ = [
    "AtomicCheckpointSaver",
    "CheckpointResumer",
    "ConfusionMatrixWriter",
    "EmbeddingQualityHandler",
    "EncoderWarmup",
    "FinalValidationHandler",
    "NonFiniteLossError",
    "RANK_ZERO_ONLY",
    "RunSummaryWriter",
    "StopOnNonFiniteLoss",
    "WeightsLoader",
    "epoch_checkpoints",
    "handlers_for_rank",
]
