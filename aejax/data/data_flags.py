"""The data flags of every command that reads a dataset (main, sweep, analyze, bench): defined
once here, so each takes the same flags with the same meaning and defaults."""

from absl import flags

DATA_DIR = flags.DEFINE_string(
    "data_dir", None, "TFDS data dir the dataset is prepared in and read from (default: "
    "$TFDS_DATA_DIR or ~/tensorflow_datasets).")
MANUAL_DIR = flags.DEFINE_string(
    "manual_dir", None, "Folder holding the dataset's original archives, for hosts without "
    "internet: TFDS checks their checksums and prepares the dataset from them.")
DOWNLOAD = flags.DEFINE_bool(
    "download", True, "Let TFDS download a dataset that is not prepared yet (the default); "
    "--nodownload never goes to the network.")


def values() -> dict[str, str | bool | None]:
  """The flags as keyword arguments of dataset.prepare and the trainer."""
  return {"data_dir": DATA_DIR.value, "manual_dir": MANUAL_DIR.value, "download": DOWNLOAD.value}
