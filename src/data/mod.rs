//! Data: readers for every file format, generated sets, named datasets, and the registry fetch.

pub mod bytes;
pub mod cifar;
pub mod class_filter;
pub mod convert;
pub mod csv_pixels;
mod dataset;
pub mod digits8;
pub mod fetch;
pub mod idx;
pub mod named;
pub mod noise;
pub mod npy;
pub mod numpy_pickle;
pub mod path_spec;
pub mod png_images;
pub mod sources;
pub mod split;
pub mod subset;
pub mod texture_patches;
pub mod tools;

pub use dataset::{Dataset, NO_LABEL};
pub use fetch::{default_data_dir, fetch};
pub use named::{load, load_as};
