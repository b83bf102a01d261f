"""LPRNet plate reader: 18 CTC steps x 68 classes (blank last), Chinese (cn) and Korean (kr) plates.

Edge runtime (TF-free, Python 3.8): ``charset`` (load_charset, Charset), ``ctc`` (greedy_decode,
beam_decode, decode), ``preprocess`` (preprocess_batch; affine_warp, the STN's warp for two-stage int8
readers), ``dataset`` (list_samples, load_crops), ``reader`` (PlateReader, PlateRead), ``benchmark``,
``evaluate`` (TF only for non-TFLite models). TF side: ``model`` (build_lprnet, freeze_context,
load_keras_model, stn_stages), ``import_torch``, ``export``, ``train``; ``torch_reference`` needs torch
(tests and measurements only).

Nothing is imported here, so that ``import lprnet.reader`` pulls in no TensorFlow.
"""
