"""The named SR datasets: what they are, where they come from, and which ones can be downloaded.

Only sources whose every byte (or decoded pixel) has a SHA-256 known here are downloadable:
Set5, Set14 and BSD200 (per-file PNGs from public GitHub repositories at pinned commits) and T91
(BMPs verified by pixel hash, stored as PNG). For the others srcompress cannot know a checksum, so
it never downloads them: the error says where to get them and which folder to put them in.
"""

from __future__ import annotations

from attrs import define, field

from srcompress.data import _manifests
from srcompress.data.fetch import RemoteArchive, RemoteFile

__all__ = ["DATASETS", "DatasetInfo"]


@define(frozen=True, kw_only=True)
class DatasetInfo:
    """A named dataset of HR images, found as the folder ``<data root>/<name>/``."""

    name: str
    description: str
    source: str  # where a person gets it (URL and what to take from there)
    count: int | None = None  # number of HR images in the published set
    files: tuple[RemoteFile, ...] = field(factory=tuple)
    archive: RemoteArchive | None = None
    license: str = ""

    @property
    def downloadable(self) -> bool:
        """True when srcompress can download and verify it."""
        return bool(self.files) or self.archive is not None


_DENOISING = "https://raw.githubusercontent.com/majedelhelou/denoising_datasets/58234876fef6f1b56306705c78dfd40cdb837b86"
_DCSCN = "https://raw.githubusercontent.com/jiny2001/dcscn-super-resolution/d382bc30d41c94ac72f8cb148d61cc4864b3b380"


def _files(base: str, manifest: tuple[tuple[str, str], ...]) -> tuple[RemoteFile, ...]:
    return tuple(RemoteFile(url=f"{base}/{name}", name=name, sha256=digest) for name, digest in manifest)


def _bmp_files(base: str, manifest: tuple[tuple[str, str], ...]) -> tuple[RemoteFile, ...]:
    return tuple(RemoteFile(url=f"{base}/{stem}.bmp", name=f"{stem}.png", pixels_sha256=digest) for stem, digest in manifest)


_TABLE = (
    DatasetInfo(
        name="Set5",
        description="5 images (baby, bird, butterfly, head, woman); the standard SR test set (Bevilacqua et al., BMVC 2012)",
        source="https://github.com/majedelhelou/denoising_datasets (folder CSet5/, commit 58234876)",
        count=5,
        files=_files(f"{_DENOISING}/CSet5", _manifests.SET5),
        license="research use; the repository claims no ownership",
    ),
    DatasetInfo(
        name="Set14",
        description="14 images (bridge.png is grayscale); SR test set (Zeyde et al., 2010)",
        source="https://github.com/majedelhelou/denoising_datasets (folder CSet14/, commit 58234876)",
        count=14,
        files=_files(f"{_DENOISING}/CSet14", _manifests.SET14),
        license="research use; the repository claims no ownership",
    ),
    DatasetInfo(
        name="T91",
        description="91 training images (Yang et al., TIP 2010); with BSD200 the classic '291' training set",
        source="https://github.com/jiny2001/dcscn-super-resolution (folder data/yang91/, BMP, commit d382bc30)",
        count=91,
        files=_bmp_files(f"{_DCSCN}/data/yang91", _manifests.T91_PIXELS),
        license="third-party research images",
    ),
    DatasetInfo(
        name="BSD200",
        description="the 200 BSDS300 training images (Martin et al., ICCV 2001); no overlap with BSD100",
        source="https://github.com/jiny2001/dcscn-super-resolution (folder data/bsd200/, commit d382bc30)",
        count=200,
        files=_files(f"{_DCSCN}/data/bsd200", _manifests.BSD200),
        license="Berkeley Segmentation Dataset: non-commercial research use",
    ),
    DatasetInfo(
        name="BSD100",
        description="the 100 BSDS300 test images; SR test set (also called B100)",
        source="https://www2.eecs.berkeley.edu/Research/Projects/CS/vision/bsds/ (BSDS300-images.tgz, images/test/), "
        "or the HR images of https://github.com/jbhuang0604/SelfExSR data/BSD100/",
        count=100,
        license="Berkeley Segmentation Dataset: non-commercial research use",
    ),
    DatasetInfo(
        name="Urban100",
        description="100 urban scenes with regular structures (Huang et al., CVPR 2015); SR test set",
        source="https://github.com/jbhuang0604/SelfExSR (data/Urban100/image_SRF_4/*_HR.png)",
        count=100,
    ),
    DatasetInfo(
        name="Manga109",
        description="109 Japanese manga volumes' covers/pages (Matsui et al., 2017); SR test set",
        source="http://www.manga109.org/en/ (download by request, academic use only)",
        count=109,
        license="academic use only, by request",
    ),
    DatasetInfo(
        name="DIV2K",
        description="2K-resolution images (Agustsson & Timofte, CVPRW 2017): 800 train (0001-0800) + 100 validation (0801-0900)",
        source="https://data.vision.ee.ethz.ch/cvl/DIV2K/ (DIV2K_train_HR.zip and/or DIV2K_valid_HR.zip)",
        count=900,
        license="academic research use",
    ),
    DatasetInfo(
        name="General100",
        description="100 training images (Dong et al., FSRCNN, ECCV 2016)",
        source="http://mmlab.ie.cuhk.edu.hk/projects/FSRCNN.html (General-100.zip)",
        count=100,
    ),
)

DATASETS: dict[str, DatasetInfo] = {info.name: info for info in _TABLE}
