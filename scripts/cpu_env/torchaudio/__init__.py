"""Stand-in for torchaudio in the CPU environment.

PyPI's torchaudio wheels are built against the CUDA torch and fail to load beside the CPU
torch 2.13.0 wheel, yet llamafactory 0.9.5 imports torchaudio at module level (for audio
datasets only). scripts/setup_env.sh installs this module in its place; gream-verl never
processes audio, and any real use fails with this message instead of a crash at import.
"""

__version__ = "0.0.0+gream.cpu.stub"


def __getattr__(name):
    raise ImportError(
        f"torchaudio.{name} is unavailable: this CPU environment has a stand-in torchaudio "
        "(see scripts/cpu_env/torchaudio/__init__.py); audio datasets need a GPU environment."
    )
