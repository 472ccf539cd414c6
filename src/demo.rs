pub async fn run(_a: DemoArgs) -> anyhow::Result<()> { Ok(()) }
#[derive(clap::Args)] pub struct DemoArgs {}
