from setuptools import find_packages, setup

setup(
    name="fairseq-dpreg",
    version="0.1.0",
    description="Gradient dot-product regularizer (Beyond Reptile, Findings of EMNLP 2021) as a fairseq plugin",
    packages=find_packages(include=["fairseq_dpreg", "fairseq_dpreg.*"]),
    python_requires=">=3.9",
    install_requires=["torch"],
)
