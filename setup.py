"""gendiag: JAX diagnostics that say how a deep generative model fails."""

import setuptools

# Version ranges below are the ones tested on CPU with Python 3.11 (2026-11).
# distrax is lightly maintained and depends on tfp-nightly, so both are pinned.
INSTALL_REQUIRES = [
    "jax>=0.10.2,<0.11",
    "flax>=0.12.8,<0.13",
    "optax>=0.2.8,<0.3",
    "distrax==0.1.9",
    "tfp-nightly==0.26.0.dev20261027",
    "orbax-checkpoint>=0.12.8,<0.13",
    "numpy>=2.0,<3",
    "ml_collections>=1.1,<2",
    "absl-py>=2.1,<3",
    "matplotlib>=3.9,<4",
    "scikit-learn>=1.5,<2",
    "markdown>=3.5,<4",
    "Pillow>=10.0,<14",
    "tqdm>=4.66,<5",
    "safetensors>=0.4,<1",
]

TEST_REQUIRES = [
    "pytest>=8,<10",
    "pytest-xdist>=3.5,<4",
    "scipy>=1.13,<2",
    # Reference packages for differential tests.
    "prdc==0.2",
    "mauve-text==0.4.0",
    "faiss-cpu>=1.8,<2",
    # Independent references for the extractors (tests only; gendiag never
    # imports them). 2.13.0 is the CPU build on the machine's disk: any other
    # torch pulls a multi-GB CUDA build.
    "torch==2.13.0",
    "transformers==5.24.0",
    "ruff>=0.6,<1",
    # tests/test_notebooks.py executes colabs/*.ipynb.
    "nbclient>=0.10,<0.12",
    "nbformat>=5.9,<6",
    "ipykernel>=6.29,<8",
]

setuptools.setup(
    name="gendiag",
    version="0.1.0",
    description="JAX diagnostics for deep generative models: MMD/KID/FID, "
    "precision-recall, divergence frontiers, GEL, FLD, CAS and flow training.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=setuptools.find_packages(include=["gendiag", "gendiag.*"]),
    package_data={"gendiag": ["features/*.npz"]},
    install_requires=INSTALL_REQUIRES,
    extras_require={"test": TEST_REQUIRES},
)
