using Rotor.Lm;
using Rotor.Rag.Answers;
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

    /// <summary>What the server's grounding prepares for <paramref name="question"/> as the last user message: the same
    /// answerer (score rule by default, the server's context) on the same retriever, outside the server.</summary>
    internal async Task<PreparedAnswer> ExpectedAsync(string question, int reserve, PrepareRequest? request = null)
    {
        using var answerer = new GroundedAnswerer(Model!, Retriever!, new GroundedAnswerOptions { ContextLength = Context });
        return await answerer.PrepareAsync(question, (request ?? new PrepareRequest()) with { AnswerTokens = reserve });
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
