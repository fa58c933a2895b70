using Rotor.Lm;
using Rotor.Rag.Demo;
using Rotor.Rag.Embeddings;
using Rotor.Rag.Search;
using Rotor.Server.Scheduling;

namespace Rotor.Server.Tests;

/// <summary>One stories260K server with the MiniLM embedder and the bundled demo corpus as its index, shared by the
/// client, retrieval and page tests (they run one after another: one collection). Greedy by default, so that what a
/// client gets can be compared with <see cref="TextGenerator"/>.</summary>
public sealed class RagFixture : IAsyncLifetime
{
    internal LanguageModel? Model;
    internal SentenceEmbedder? Embedder;
    internal Retriever? Retriever;
    internal Served? Served;

    internal const int Context = 512;

    public async Task InitializeAsync()
    {
        if (TestPaths.SharedLm(TestPaths.Stories) is null || TestPaths.SharedLm(TestPaths.Tok512) is null) return;
        Model = Models.Stories();
        Embedder = SentenceEmbedder.CreateMiniLm();
        Retriever = await DemoCorpus.CreateRetrieverAsync(Embedder);
        Served = await Served.StartAsync(Model, new RotorServerOptions
        {
            ModelId = "m", ApiKeys = ["k"], Sampling = SamplingOptions.Greedy, DefaultMaxTokens = 64,
            Scheduler = new SchedulerOptions { ContextLength = Context, MaxBatch = 4 },
        }, Embedder, Retriever);
    }

    public async Task DisposeAsync()
    {
        if (Served is not null) await Served.DisposeAsync();
        Retriever?.Dispose();
        Embedder?.Dispose();
        Model?.Dispose();
    }
}

[CollectionDefinition("rag")]
public sealed class RagCollection : ICollectionFixture<RagFixture>;
