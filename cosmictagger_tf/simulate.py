"""Command-line entry point: ``python -m cosmictagger_tf.simulate --output FILE --events N``.

Simulates SBND-like events (cosmic muons, a neutrino interaction in most events, noise) into a
larcv3 file that the training reader opens like a real one. Flag mistakes exit with status 2 and
one line saying what to change; an unwritable output exits with status 1.
"""
import logging
import sys

from absl import app, flags
from absl import logging as absl_logging

from cosmictagger_tf.simulation.events import simulate_file
from cosmictagger_tf.simulation.settings import SimulationSettings

logger = logging.getLogger("cosmictagger_tf.simulate")
DEFAULTS = SimulationSettings()

flags.DEFINE_string("output", None, "larcv3 file to write (.h5).")
flags.DEFINE_integer("events", 100, "Number of events (entries) to simulate.")
flags.DEFINE_integer("seed", 0, "Seed; the same seed and settings give the same file.")
flags.DEFINE_bool("overwrite", False, "Replace --output if it exists.")
flags.DEFINE_float("cosmic_rate", DEFAULTS.cosmic_rate,
                   "Mean number of cosmic muons crossing the TPC per event.")
flags.DEFINE_float("neutrino_probability", DEFAULTS.neutrino_probability,
                   "Fraction of events with a neutrino interaction.")
flags.DEFINE_float("neutrino_energy_scale", DEFAULTS.neutrino_energy_scale,
                   "Scale of neutrino track lengths and shower energies.")
flags.DEFINE_float("delta_ray_rate", DEFAULTS.delta_ray_rate, "Delta rays per cm of muon track.")
flags.DEFINE_float("threshold", DEFAULTS.threshold, "Zero-suppression threshold in ADC.")
flags.DEFINE_float("noise_scale", 1.0, "Scale of the number of noise hits on every plane.")

FLAGS = flags.FLAGS


def settings_from_flags():
    """Return SimulationSettings from the flags; raise ValueError naming a bad value."""
    if FLAGS.noise_scale < 0:
        raise ValueError(f"--noise_scale must not be negative, got {FLAGS.noise_scale}")
    settings = SimulationSettings(
        cosmic_rate=FLAGS.cosmic_rate,
        neutrino_probability=FLAGS.neutrino_probability,
        neutrino_energy_scale=FLAGS.neutrino_energy_scale,
        delta_ray_rate=FLAGS.delta_ray_rate,
        threshold=FLAGS.threshold,
        noisy_half_hits=DEFAULTS.noisy_half_hits * FLAGS.noise_scale,
        quiet_half_hits=DEFAULTS.quiet_half_hits * FLAGS.noise_scale,
        collection_hits=DEFAULTS.collection_hits * FLAGS.noise_scale)
    try:
        return settings.validate()
    except ValueError as error:
        raise ValueError(f"--{error}") from None


def main(argv):
    if len(argv) > 1:
        _fail(2, f"unexpected arguments {' '.join(argv[1:])}; every option is a --flag")
    absl_logging.set_verbosity(absl_logging.INFO)
    absl_logging.get_absl_handler().setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S"))

    if not FLAGS.output:
        _fail(2, "--output is required: the larcv3 file to write, e.g. --output=sim.h5")
    if FLAGS.events < 1:
        _fail(2, f"--events must be at least 1, got {FLAGS.events}")
    if FLAGS.seed < 0:
        _fail(2, f"--seed must not be negative, got {FLAGS.seed}")
    try:
        settings = settings_from_flags()
    except ValueError as error:
        _fail(2, str(error))

    try:
        simulate_file(FLAGS.output, FLAGS.events, FLAGS.seed, settings, FLAGS.overwrite)
    except FileExistsError as error:
        _fail(2, str(error))
    except OSError as error:
        _fail(1, f"cannot write {FLAGS.output}: {error}")


def _fail(status, message):
    logger.error("%s", message)
    print(f"error: {message}", file=sys.stderr)
    sys.exit(status)


def parse_flags(argv):
    """Parse the command line; an unknown or ill-typed flag exits with status 2 and one line."""
    try:
        return FLAGS(argv)
    except flags.Error as error:
        print(f"error: {error}; see --helpshort", file=sys.stderr)
        sys.exit(2)


def run():
    app.run(main, flags_parser=parse_flags)


if __name__ == "__main__":
    run()
