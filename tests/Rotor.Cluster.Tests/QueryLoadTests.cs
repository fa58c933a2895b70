using Rotor.Rag.Search;

namespace Rotor.Cluster.Tests;

/// <summary>The query load of <c>rotor cluster search --queries</c> and the benchmark script: warm-up not counted.</summary>
public sealed class QueryLoadTests
{
    private sealed class Counting(bool fail) : IPassageRetriever
    {
        public List<string> Asked { get; } = [];

        public Task<RetrievalResult> SearchAsync(string query, RetrievalOptions? options = null, CancellationToken cancellationToken = default)
        {
            lock (Asked) Asked.Add(query);
            if (fail) throw new RotorException("shard 3 has no replica");
            return Task.FromResult(new RetrievalResult([], [], 0, 0));
        }
    }

    [Fact]
    public async Task EachClientWarmsUpOnceUncountedThenEveryQuestionIsAskedOnce()
    {
        var retriever = new Counting(fail: false);
        string[] questions = ["a", "b", "c", "d", "e"];
        var report = await QueryLoad.RunAsync(retriever, questions, RetrievalOptions.Default, seconds: 0, clients: 2);
        Assert.Equal(5, report.Queries);
        Assert.Equal(0, report.Failed);
        Assert.Equal(["a", "a", "b", "b", "c", "d", "e"], retriever.Asked.Order());
    }

    [Fact]
    public async Task AFailedWarmUpStopsTheMeasurementWithItsReason()
    {
        var e = await Assert.ThrowsAsync<RotorException>(() => QueryLoad.RunAsync(new Counting(fail: true), ["a"], RetrievalOptions.Default, seconds: 1, clients: 1));
        Assert.Contains("warm-up", e.Message);
        Assert.Contains("shard 3 has no replica", e.Message);
    }
}
