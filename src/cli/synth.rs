//! `xmodal synth`

use std::path::PathBuf;

use clap::Args;

use crate::data::synth;

#[derive(Debug, Args)]
pub struct SynthArgs {
    /// Output directory (dataset.jsonl, images/, heldout.json).
    #[arg(long, env = "XMODAL_SYNTH_OUT")]
    pub out: PathBuf,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Number of images.
    #[arg(long, default_value_t = 2000)]
    pub images: usize,
}

pub fn run(args: SynthArgs) -> anyhow::Result<()> {
    let bar = super::progress::bar(args.images as u64, "rendering scenes");
    let held = synth::generate(&args.out, args.seed, args.images, |n| bar.inc(n))?;
    bar.finish();
    let names = |v: &[(String, synth::Shape)]| {
        v.iter()
            .map(|(c, s)| format!("{c} {}", s.word()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "wrote {} scenes to {}",
        args.images,
        args.out.join("dataset.jsonl").display()
    );
    println!(
        "held out of training: val [{}]; test [{}]",
        names(&held.val),
        names(&held.test)
    );
    Ok(())
}
