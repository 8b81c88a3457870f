"""The knobs of the event simulation, with defaults calibrated on real SBND events."""
from dataclasses import asdict, dataclass

# Bump when a change of the physics or of a default changes the events a seed produces, so that
# cached datasets are simulated again.
SIMULATOR_VERSION = 1


@dataclass(frozen=True)
class SimulationSettings:
    """Physics and detector-response settings; energies in MeV, charges in ADC."""

    cosmic_rate: float = 9.0  # mean cosmic muons crossing the TPC per event
    delta_ray_rate: float = 0.03  # delta rays per cm of muon track
    stopping_fraction: float = 0.1  # cosmic muons that stop inside the TPC
    neutrino_probability: float = 0.9  # events with a neutrino interaction
    neutrino_energy_scale: float = 1.5  # scales track lengths and shower energies

    threshold: float = 5.0  # ADC, zero suppression
    induction_gain: float = 140.0  # ADC per MeV
    collection_gain: float = 155.0  # ADC per MeV
    compression_scale: float = 150.0  # ADC, pulse heights grow logarithmically above it; 0: off
    crosstalk: float = 0.1  # fraction of a pixel's charge seen on each neighbouring wire
    electronics_noise: float = 1.0  # ADC, Gaussian noise on every pixel with charge
    noisy_half_hits: float = 9500.0  # noise hits per event in the noisy half of an induction plane
    quiet_half_hits: float = 500.0  # noise hits per event in the other induction half
    collection_hits: float = 300.0  # noise hits per event on the collection plane
    label_min_charge: float = 2.0  # ADC of a particle's own charge needed to label a pixel

    def validate(self):
        """Raise ValueError naming the first setting out of range."""
        for name, value in asdict(self).items():
            if value < 0:
                raise ValueError(f"{name} must not be negative, got {value}")
        if self.neutrino_probability > 1:
            raise ValueError(f"neutrino_probability must be at most 1, got "
                             f"{self.neutrino_probability}")
        if self.neutrino_energy_scale == 0:
            raise ValueError("neutrino_energy_scale must be positive")
        return self
