using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;

namespace Rotor.Cluster;

/// <summary>What <c>rotor cluster status</c> shows: the layout, the silos, and what each reachable replica holds.</summary>
public static class ClusterStatusReader
{
    /// <summary>Reads the status through any silo.</summary>
    public static async Task<ClusterStatus> ReadAsync(IGrainFactory grains, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(grains);
        var directory = grains.GetGrain<IClusterDirectoryGrain>(0);
        var layout = await directory.Layout().WaitAsync(cancellationToken).ConfigureAwait(false);
        var silos = await directory.Silos().WaitAsync(cancellationToken).ConfigureAwait(false);
        var infos = await Task.WhenAll(layout.Replicas.SelectMany(kv => kv.Value.Select(async silo =>
        {
            try { return await grains.GetGrain<IShardReplicaGrain>($"{kv.Key}@{silo}").Info().WaitAsync(TimeSpan.FromSeconds(10), cancellationToken).ConfigureAwait(false); }
            catch (Exception e) when (e is not OperationCanceledException) { return null; }
        }))).ConfigureAwait(false);
        return new ClusterStatus(layout, silos, infos.OfType<ReplicaInfo>().ToList());
    }

    /// <summary>The status for people.</summary>
    public static string Text(ClusterStatus s)
    {
        var sb = new StringBuilder();
        sb.AppendLine("index: " + ClusterNames.Describe(s.Layout));
        sb.AppendLine("silos:");
        foreach (var silo in s.Silos)
            sb.AppendLine(string.Create(CultureInfo.InvariantCulture, $"  {silo.Name,-16} {silo.Status,-10} {silo.Address}  replicas {s.Layout.Replicas.Values.Count(r => r.Contains(silo.Name))}"));
        sb.AppendLine("shards:");
        foreach (var (shard, reps) in s.Layout.Replicas.OrderBy(kv => kv.Key))
        {
            var parts = reps.Select(r => s.Replicas.FirstOrDefault(i => i.Shard == shard && i.Silo == r) is { } i
                ? string.Create(CultureInfo.InvariantCulture, $"{r} ({i.Passages:N0} passages{(i.Sealed ? "" : ", not sealed")}, {i.Bytes / 1048576.0:F1} MB)")
                : $"{r} (unreachable)");
            int want = s.Layout.Settings?.Replicas ?? 0;
            sb.AppendLine(string.Create(CultureInfo.InvariantCulture, $"  {shard,4}: {string.Join(", ", parts)}{(reps.Length < want ? $"  [{reps.Length}/{want} replicas]" : "")}"));
        }
        return sb.ToString();
    }

    /// <summary>The status as JSON: <c>{"layout":{"version","settings","ingest","replicas":{"0":["a","b"]}},"silos":[...],"replicas":[...]}</c>.</summary>
    public static string Json(ClusterStatus s)
    {
        var l = s.Layout;
        var root = new JsonObject
        {
            ["version"] = l.Version,
            ["settings"] = l.Settings is { } st ? new JsonObject
            {
                ["shards"] = st.Shards, ["replicas"] = st.Replicas, ["dimensions"] = st.Dimensions, ["code"] = st.Code.ToString(),
                ["rescoreFactor"] = st.RescoreFactor, ["structure"] = st.Structure.ToString(), ["modelSha256"] = st.ModelSha256,
            } : null,
            ["ingest"] = new JsonObject { ["source"] = l.Ingest.Source, ["documents"] = l.Ingest.Documents, ["passages"] = l.Ingest.Passages, ["sealed"] = l.Ingest.Sealed },
            ["shards"] = new JsonObject(l.Replicas.OrderBy(kv => kv.Key).Select(kv => KeyValuePair.Create(kv.Key.ToString(CultureInfo.InvariantCulture), (JsonNode?)new JsonArray(kv.Value.Select(v => (JsonNode?)v).ToArray())))),
            ["silos"] = new JsonArray(s.Silos.Select(x => (JsonNode?)new JsonObject { ["name"] = x.Name, ["address"] = x.Address, ["status"] = x.Status }).ToArray()),
            ["replicas"] = new JsonArray(s.Replicas.Select(x => (JsonNode?)new JsonObject { ["shard"] = x.Shard, ["silo"] = x.Silo, ["passages"] = x.Passages, ["sealed"] = x.Sealed, ["bytes"] = x.Bytes }).ToArray()),
        };
        return root.ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true });
    }
}
