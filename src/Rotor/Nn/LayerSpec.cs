using System.Globalization;
using System.Text;

namespace Rotor.Nn;

/// <summary>The architecture of one layer: a type name and its integer or real arguments, stored in checkpoints and
/// deployable models as JSON (<c>{"type": "linear", "in": 784, ...}</c>).</summary>
/// <param name="Type">linear, relu, rmsnorm, dropout, conv2d, maxpool2d.</param>
/// <param name="Args">Arguments by name.</param>
public sealed record LayerSpec(string Type, IReadOnlyDictionary<string, double> Args)
{
    /// <summary>The integer argument <paramref name="key"/>.</summary>
    /// <exception cref="RotorException">Missing or not an integer.</exception>
    public int Int(string key)
    {
        if (!Args.TryGetValue(key, out double v)) throw new RotorException($"layer {Type}: missing argument '{key}'");
        if (v != Math.Floor(v) || v < int.MinValue || v > int.MaxValue) throw new RotorException($"layer {Type}: argument '{key}' = {v} is not an integer");
        return (int)v;
    }

    /// <summary>The real argument <paramref name="key"/>.</summary>
    public double Real(string key) =>
        Args.TryGetValue(key, out double v) ? v : throw new RotorException($"layer {Type}: missing argument '{key}'");

    /// <summary>A spec from alternating names and values.</summary>
    public static LayerSpec Of(string type, params (string Key, double Value)[] args) =>
        new(type, args.ToDictionary(a => a.Key, a => a.Value));

    /// <summary>The specs as a JSON array.</summary>
    public static string ToJson(IEnumerable<LayerSpec> specs)
    {
        var sb = new StringBuilder("[");
        bool first = true;
        foreach (var s in specs)
        {
            if (!first) sb.Append(", ");
            first = false;
            sb.Append("{\"type\": \"").Append(s.Type).Append('"');
            foreach (var kv in s.Args.OrderBy(k => k.Key, StringComparer.Ordinal))
                sb.Append(", \"").Append(kv.Key).Append("\": ").Append(kv.Value.ToString("R", CultureInfo.InvariantCulture));
            sb.Append('}');
        }
        return sb.Append(']').ToString();
    }

    /// <summary>Parses a JSON array written by <see cref="ToJson"/>; <paramref name="where"/> names the source in errors.</summary>
    public static List<LayerSpec> ParseJson(string json, string where)
    {
        try
        {
            using var doc = System.Text.Json.JsonDocument.Parse(json);
            if (doc.RootElement.ValueKind != System.Text.Json.JsonValueKind.Array) throw new RotorException($"{where}: architecture is not a JSON array");
            var list = new List<LayerSpec>();
            foreach (var e in doc.RootElement.EnumerateArray())
            {
                string? type = null;
                var args = new Dictionary<string, double>();
                foreach (var p in e.EnumerateObject())
                {
                    if (p.Name == "type") type = p.Value.GetString();
                    else if (p.Value.ValueKind == System.Text.Json.JsonValueKind.Number) args[p.Name] = p.Value.GetDouble();
                    else throw new RotorException($"{where}: layer {list.Count}: argument '{p.Name}' is not a number");
                }
                list.Add(new LayerSpec(type ?? throw new RotorException($"{where}: layer {list.Count} has no type"), args));
            }
            return list;
        }
        catch (System.Text.Json.JsonException e) { throw new RotorException($"{where}: architecture is not valid JSON: {e.Message}", e); }
        catch (InvalidOperationException e) { throw new RotorException($"{where}: architecture has a field of the wrong kind: {e.Message}", e); }
    }
}
