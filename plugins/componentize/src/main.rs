//! `switchyard-componentize IN.wasm OUT.wasm`: wraps a core module built for
//! `wasm32-unknown-unknown` with wit-bindgen (which embeds the world in a
//! `component-type` section) into a component. The result imports only what the
//! world imports — no WASI — so the plugin has no ambient authority at all.

use anyhow::{Context, bail};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, output] = args.as_slice() else {
        bail!("usage: switchyard-componentize IN.wasm OUT.wasm");
    };
    let core = std::fs::read(input).with_context(|| format!("reading {input}"))?;
    let component = wit_component::ComponentEncoder::default()
        .module(&core)
        .with_context(|| format!("{input} is not a wit-bindgen core module"))?
        .validate(true)
        .encode()
        .with_context(|| format!("encoding {input} as a component"))?;
    std::fs::write(output, &component).with_context(|| format!("writing {output}"))?;
    println!("{output}: {} bytes", component.len());
    Ok(())
}
