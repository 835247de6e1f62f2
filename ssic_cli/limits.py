"""Ranges that the CLI, the library, the file format and the model share, each defined once."""

# --quality: 1 (smallest files) .. 8 (best); fractions allowed. The model has one anchor per
# whole quality (model.entropy.LAMBDAS) and interpolates between them; the header stores the
# quality as float32 and a reader refuses any other value.
QUALITY_MIN, QUALITY_MAX = 1.0, 8.0
